"""The profile page: personal API tokens and the secret calendar feed of one's deadlines."""
