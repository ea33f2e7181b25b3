"""stemscribe.bots: the Discord and Telegram front ends.

They parse option text with stemscribe.core.options, enqueue through
stemscribe.worker.client.JobClient, show progress and deliver results. They never
run models. Shared wording lives in stemscribe.bots.common, exactly-once delivery
across restarts in stemscribe.bots.deliveries, and the settings loading both
bots' main() share in stemscribe.bots.startup.
"""
