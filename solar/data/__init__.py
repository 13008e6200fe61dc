"""Data: sources (hub schema -> canonical records), filters, template, packing, datamodule."""
