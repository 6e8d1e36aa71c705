"""``stop serve``: a read-only live web dashboard of a store, and the templates ``stop report`` shares."""
