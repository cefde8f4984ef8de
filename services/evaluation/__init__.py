"""Measuring the services' quality, outside the services' own packages (the search image leaves
this package out; the tagger images keep it for `vitrine-tagger eval` and `train --eval-data`).

- metrics: every figure (nDCG, recall, precision, F1, the tagger's contract), numpy only, so
  scripts/compare_annif.py loads it by path in Annif's environment;
- queries: the evaluated collection (subjects withheld) and the queries made from its subjects;
- protocols: the search evaluation's protocols through the Search and Recommend RPCs;
- tfidf: the prototype's keyword search, the search evaluation's baseline;
- processes: the services the search evaluation starts and always stops;
- report: metrics.md tables and the search evaluation's bars;
- search: `vitrine-search eval`, the command tying them together.

The tagger's evaluation of a trained version stays next to the model it reads
(vitrine.tagger.evaluate) and takes its figures and table from here."""
