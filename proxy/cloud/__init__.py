"""The edge's link to its verifier: the channel, the HTTP client, the probe, the circuit breaker."""
