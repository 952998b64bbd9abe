"""Evaluation: metrics as CLIP_benchmark defines them, tasks, results and reports."""
