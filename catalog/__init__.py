"""Federated catalog: products in the UCP shape, search, ranking and explanations."""
