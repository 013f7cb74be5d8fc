"""Fitting FLAME to a photo: landmark fit (rigid, identity, expression, eyes), photometric
refinement, ARKit-weight fit, the differentiable renderer they share, synthetic test renders."""
