"""Which runs next: the design of an isoFLOP ladder's next runs (docs/fits.md, "Which runs
next"). Pure: candidates in (`candidates`), the law's uncertainty and what a run would remove
from it (`information`), the ranked proposals out (`recommend`)."""
