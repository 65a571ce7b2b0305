"""Batch scoring with a project's `@champion`: on Apache Spark, or in this process for comparison.

`make batch-score PROJECT=<name> INPUT=<file, folder or glob> OUTPUT=<folder>` runs `batch.job`.
The job is generic; what is scored, and how, is the project's own `batch` module (see
`projects/core/project.py` and `batch.spark.Model`). docs/batch.md has the whole story.
"""
