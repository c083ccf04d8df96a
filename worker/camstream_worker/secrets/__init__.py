"""Secret references resolved to values: ``base`` (the SecretResolver interface)
and ``static`` (standalone mode). Cluster mode's resolver is cluster/secrets.py.
"""
