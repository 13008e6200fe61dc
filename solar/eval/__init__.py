"""Evaluation: H6 through lm-eval's own tasks (``h6``, ``tasks``) and the Table 9 contamination test."""
