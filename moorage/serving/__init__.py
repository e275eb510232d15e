"""The data plane: router, instance pools, health checks. Reads specs; never writes state."""
