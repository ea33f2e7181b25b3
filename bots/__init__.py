"""stemscribe.bots: the Discord and Telegram front ends.

They parse option text with stemscribe.core.options, enqueue through
stemscribe.worker.client.JobClient, show progress and deliver results. They never
run models. Shared wording lives in stemscribe.bots.common.
"""
