"""`drip demo`: a cohort's first weeks told on this machine, with people who answer (``story``)."""
