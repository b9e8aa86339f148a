"""Deployments: a project's served model versions (lifecycle.py: champion, shadow, switches
and rollback), what they predict (predictions.py: predicted assets and their slots), and the
feedback, monitoring and continuous-training loops built on those."""
