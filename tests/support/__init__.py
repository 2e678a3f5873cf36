"""Helpers the tests share that are not tests themselves: dataset trees in the published layouts, the peers' models
and recipes, the transformer fixtures' weights."""
