"""Jobs: work that runs to an end (batch transform first; training, tuning and the
recommender later). Engines here compute; control/ owns their state."""
