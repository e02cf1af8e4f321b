"""First-party federated analyses: what each member computes on its own rows, and how the
hub combines members' parts into the answer a pooled analysis would give.

Each analysis is split in two pure halves: a *local* part a node computes from its rows
(sums, score vectors, information matrices, counts on a global grid, sketches) and a
*combine* step over the parts that left the members through their disclosure step.
"""
