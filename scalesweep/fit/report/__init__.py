"""What a fit reads as: report.md and the self-contained report.html (`document`, `html`),
and the text summary the command prints (`text`)."""
