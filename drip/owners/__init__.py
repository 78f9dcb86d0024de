"""What program owners read: progress, status texts, the HTML report and the digest."""
