"""Adapters to the outside world (payment gateway, carrier), each with a sandbox implementation."""
