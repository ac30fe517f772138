"""Chinchilla Approach 3: L(N, D) = E + A/N^α + B/D^β fitted as Epoch's replication did
(`approach3`), and the compute-optimal allocation under it in the runs' FLOP convention
(`allocation`)."""
