"""Who sent a message: addresses compared as addresses, and what the receiving server vouches for."""

import pytest

from drip.core.senders import Vouch, address_forms, address_key, parse_results, same_address, trusted_results


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("Ana@Example.COM", "ana@example.com", True),
        ("ana+linkedin@example.com", "ana@example.com", True),
        ("<ana@example.com>", "ana@example.com", True),
        ("mia@xn--bcher-kva.example", "mia@bücher.example", True),
        ("mia@BÜCHER.example", "mia@bücher.example", True),
        ("jo@straße.example", "jo@xn--strae-oqa.example", True),
        ("jo@straße.example", "jo@strasse.example", False),  # another domain, not a spelling of this one
        ("ana@example.com", "ana@example.org", False),
        ("anna@example.com", "ana@example.com", False),
        ("ana@example.com", None, False),
        ("", "ana@example.com", False),
    ],
)
def test_addresses_are_compared_as_addresses(one: str, other: str | None, same: bool) -> None:
    assert same_address(one, other) is same


def test_the_forms_an_address_may_be_stored_under() -> None:
    assert address_forms("Mia+x@xn--bcher-kva.example") == {
        "mia+x@xn--bcher-kva.example", "mia@xn--bcher-kva.example", "mia+x@bücher.example", "mia@bücher.example",
    }  # fmt: skip
    assert address_forms("not an address") == set() and address_key("A@B.example") == "a@b.example"


GOOGLE = (
    "mx.google.com; dkim=pass header.i=@example.de header.s=s1 header.b=abc; "
    "spf=pass (google.com: domain of dora@example.de designates 192.0.2.1 as permitted sender) "
    "smtp.mailfrom=dora@example.de; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.de"
)
EXCHANGE = (
    "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.de; dkim=pass (signature was verified) "
    "header.d=example.de;dmarc=pass action=none header.from=example.de;compauth=pass reason=100"
)


@pytest.mark.parametrize(
    ("header", "domain", "vouch"),
    [
        (GOOGLE, "example.de", Vouch.PASS),
        (GOOGLE.replace("dmarc=pass", "dmarc=fail"), "example.de", Vouch.FAIL),
        (GOOGLE, "example.fr", Vouch.NONE),  # results about another domain settle nothing
        (EXCHANGE, "example.de", Vouch.PASS),
        ("mx.example.com; dkim=pass header.d=example.de", "mail.example.de", Vouch.PASS),  # relaxed alignment
        ("mx.example.com; dkim=pass header.d=evil.example", "example.de", Vouch.NONE),
        (
            "mx.example.com; spf=pass smtp.mailfrom=example.de",
            "example.de",
            Vouch.NONE,
        ),  # SPF says nothing of From
        ("mx.example.com; none", "example.de", Vouch.NONE),
    ],
)
def test_what_authentication_results_vouch_for(header: str, domain: str, vouch: Vouch) -> None:
    assert parse_results(header).vouch(domain)[0] is vouch


def test_only_the_topmost_header_of_a_trusted_server_counts() -> None:
    forged = "mx.example.com; dmarc=pass header.from=example.de"
    genuine = "mx.example.com; dmarc=fail header.from=example.de"
    found = trusted_results([genuine, forged], ["mx.example.com"])
    assert found is not None and found.vouch("example.de")[0] is Vouch.FAIL
    assert trusted_results([forged], ["mx.other.example"]) is None  # not the operator's server
    assert trusted_results([forged], []) is None  # nothing trusted unless the operator says so
    exchange = trusted_results([EXCHANGE], ["*"])
    assert exchange is not None and exchange.authserv_id == ""
