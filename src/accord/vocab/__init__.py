"""OMOP vocabulary shipped with Accord: named concept ids and a small starter vocabulary.

``accord.vocab.concepts`` names the concepts the scenarios and the synthetic generator use;
``accord.vocab.starter`` loads the starter vocabulary tables into a CDM database.
"""

from accord.vocab.starter import STARTER_VOCABULARY_VERSION, load_starter_vocabulary

__all__ = ["STARTER_VOCABULARY_VERSION", "load_starter_vocabulary"]
