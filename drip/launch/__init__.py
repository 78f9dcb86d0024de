"""Reading a cohort folder, checking it, and enrolling its participants."""
