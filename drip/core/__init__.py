"""The rules of drip, pure: no database, web server or SMTP is imported here."""
