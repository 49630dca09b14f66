"""EHR accounts for the submission port (587): argon2id passwords, and the lockout of
client addresses after repeated bad credentials, both in the database so every node agrees."""

from .authenticator import AccountAuthenticator
from .lockout import FailureCount, LockoutPolicy, after_failure, client_key, lockout_policy
from .passwords import (
    PasswordRefused,
    chosen_password,
    generate_password,
    hash_password,
    verify_password,
)
from .store import Account, AccountError, AccountProblem, Accounts, Lockouts, account_name

__all__ = [
    "Account", "AccountAuthenticator", "AccountError", "AccountProblem", "Accounts", "FailureCount",
    "LockoutPolicy", "Lockouts", "PasswordRefused", "account_name", "after_failure", "chosen_password",
    "client_key", "generate_password", "hash_password", "lockout_policy", "verify_password",
]
