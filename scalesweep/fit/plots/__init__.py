"""PNG plots of the fits, one module per family (`isoflop`, `parametric`, `lr`, …), all drawn on
`canvas` (matplotlib's Agg canvas: no display, no global pyplot state). Each function takes a
fit result and a folder, writes one file and returns its path."""
