"""LightningModules: the shared causal-LM base and one module per objective."""
