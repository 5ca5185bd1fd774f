"""`aifactory rollout SITE`: converge a changed GPU stack across a live site in a canary and batches.

order     which nodes go in which batch (canary per pool, then batches of N or P%)
discover  which nodes differ from the declaration, read from the nodes
cluster   taking a node out of service and back (cordon, drain, uncordon) through the Kubernetes API
record    the rollout's state and record: runs/<site>/rollouts/<id>/, pushed to the evidence store
engine    the loop: per batch, out of service, converge, verify, back in service; stop on failures
"""
