"""The event side: the arq worker, and (to come) relay, triggers, cron and webhooks."""
