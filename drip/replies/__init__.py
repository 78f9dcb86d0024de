"""Reading the reply mailbox and doing what each message asks."""
