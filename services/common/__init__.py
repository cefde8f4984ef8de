"""Code every Vitrine service shares: settings, server bootstrap, logging, metrics, errors.

`common` imports nothing from the services; services talk to each other only over gRPC.
"""
