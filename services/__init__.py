"""Vitrine: machine-learning services for collections (import name for the services/ folder)."""
