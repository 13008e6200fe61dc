"""The hub schemas solar reads and the errors of bad data, without importing ``datasets``: the
config validator uses them, and a bad command line must fail before the heavy imports."""

from __future__ import annotations

# schema -> the hub columns a loader needs (extra columns are ignored)
SCHEMAS: dict[str, list[str]] = {
    "alpaca_gpt4": ["instruction", "input", "output"],
    "openorca": ["id", "system_prompt", "question", "response"],
    "metamathqa": ["query", "response", "type", "original_question"],
    "text": ["text"],
    # preference data (solar/data/preference.py)
    "orca_dpo_pairs": ["system", "question", "chosen", "rejected"],
    "ultrafeedback": ["chosen", "rejected"],
    "competition_math": ["problem", "solution"],
    "synth_math_alignment": [],  # a join of a metamathqa and a competition_math part
}
PREFERENCE_SCHEMAS = ("orca_dpo_pairs", "ultrafeedback", "synth_math_alignment")


class SchemaError(ValueError):
    """A source lacks a column of its hub schema, or its file cannot be read."""


class EmptySourceError(ValueError):
    """A source (or the whole mixture) has no rows left after filtering."""
