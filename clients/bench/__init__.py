"""tandem-bench: the WAN testbed (link emulator, CPU limiter) and the benchmark harness."""
