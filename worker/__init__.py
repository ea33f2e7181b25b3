"""stemscribe.worker: the job queue on RQ and Redis between the bots and core.

Modules: client (JobClient, the API both bots use), records (its data types),
jobs (the RQ entry function), runtime (what a worker process loads once), main (``stemscribe worker``
and the worker class), artifacts (where inputs and outputs live, their TTL),
limits (size, duration, rate and fairness caps; timeouts), queues (Redis
connection and key names), logs (text/JSON logging with the job id).

Importing this package loads nothing heavy; import the submodule you need.
"""
