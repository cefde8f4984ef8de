"""The tagger service: subject-tag suggestions with explanations, feedback, audit."""
