"""Base models of the tagger, one small module each behind `base.Backend` (train / suggest /
explain / save / load), in the manner of Annif's backends. The combiner
(`vitrine.tagger.ensemble.Combiner`) is one more backend, over their outputs."""
