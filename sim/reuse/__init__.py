"""How far a neighbour's latent may be reused: similarity -> K (the selector and its ladders), thresholds
carried to the run's embedder, and the quality a reused latent delivers."""
