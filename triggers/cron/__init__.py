"""Cron triggers and one-off scheduled runs: when they are due (schedule.py), and the loop
every worker runs to fire them exactly once per tick (scheduler.py)."""
