#!/usr/bin/env python3
"""Prove the emulator faithful: drive it with the official Python client
(cloudshell-automation-api) and check that the client parses every reply the
way it parses a real server's.

usage: check_client.py PORT     (emulator on 127.0.0.1:PORT with user
admin / "p&ss<w>rd", admin token "ADMIN-TOKEN", reservation r1, model
"Mutex Service" with attribute "Mutex Owner")

Prints one "ok <what>" line per check and "ALL OK" at the end; any failure
raises (non-zero exit) with a traceback naming the check.
"""

import json
import sys
import urllib.request

from cloudshell.api.cloudshell_api import AttributeNameValue, CloudShellAPISession
from cloudshell.api.common_cloudshell_api import CloudShellAPIError

PORT = int(sys.argv[1])
BASE = "http://127.0.0.1:%d" % PORT
PASSWORD = "p&ss<w>rd"


def control(action, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(BASE + "/_control/" + action, data=data, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"{}")


def ok(what):
    print("ok", what, flush=True)


def expect_api_error(code, fragment, call, *args):
    try:
        call(*args)
    except CloudShellAPIError as e:
        assert e.code == code, (e.code, e.message)
        assert fragment in e.message, e.message
        return e
    raise AssertionError("expected CloudShellAPIError %s" % code)


# Logon: the session constructor logs on and keeps Token/@Token.
api = CloudShellAPISession(host="127.0.0.1", username="admin", password=PASSWORD, domain="Global", port=PORT)
token = api.authentication.xmlrpc_token
assert isinstance(token, str) and len(token) == 24, token
log = control("log")
assert log[0]["method"] == "Logon"
assert "<password>p&amp;ss&lt;w&gt;rd</password>" in log[0]["body"], log[0]["body"]
ok("Logon: LogonResponseInfo parsed, Token.Token = 24-char base64")

# SecureLogon with an admin token; the *returned* token is used afterwards.
secure = CloudShellAPISession(host="127.0.0.1", token_id="ADMIN-TOKEN", domain="Global", port=PORT)
assert secure.authentication.xmlrpc_token not in ("", "ADMIN-TOKEN")
secure.GetReservationDetails("r1")
ok("SecureLogon: LogonResponseInfo parsed, session token used")

# AddServiceToReservation success: no ResponseInfo, the client returns the raw reply.
raw = api.AddServiceToReservation("r1", "Mutex Service", "MUTEX", [])
assert b'Success="true"' in raw, raw
ok("AddServiceToReservation success")

# The recipe's contention signal, exactly as the README quotes it.
e = expect_api_error("100", "", api.AddServiceToReservation, "r1", "Mutex Service", "MUTEX", [])
assert e.message == "Service with given alias already exists", e.message
assert str(e) == "CloudShell API error 100: Service with given alias already exists", str(e)
ok("AddServiceToReservation duplicate alias -> CloudShellAPIError code '100'")

api.AddServiceToReservation("r1", "Mutex Service", "OWNED", [AttributeNameValue("Mutex Owner", "host1:1234")])
details = api.GetReservationDetails("r1")
description = details.ReservationDescription
assert description.Id == "r1", description.Id
services = {s.Alias: s for s in description.Services}
assert set(services) == {"MUTEX", "OWNED"}, services.keys()
assert services["MUTEX"].ServiceName == "Mutex Service"
attrs = [(a.Name, a.Value) for a in services["OWNED"].Attributes]
assert attrs == [("Mutex Owner", "host1:1234")], attrs
ok("GetReservationDetails: Services[].Alias/ServiceName and Attributes[].Name/Value parsed")

details = api.GetReservationDetails("r1", True)
assert len(details.ReservationDescription.Services) == 2
ok("GetReservationDetails with disableCache")

raw = api.RemoveServicesFromReservation("r1", ["MUTEX", "OWNED"])
assert b'Success="true"' in raw, raw
assert api.GetReservationDetails("r1").ReservationDescription.Services == []
ok("RemoveServicesFromReservation; empty Services parsed as []")

expect_api_error("100", "not found", api.GetReservationDetails, "no-such-reservation")
expect_api_error("100", "not found", api.AddServiceToReservation, "no-such-reservation", "Mutex Service", "X", [])
expect_api_error("100", "Mutex Servic", api.AddServiceToReservation, "r1", "Mutex Servic", "X", [])
ok("unknown reservation / service model -> CloudShellAPIError code '100'")

try:
    CloudShellAPISession(host="127.0.0.1", username="admin", password="wrong", domain="Global", port=PORT)
    raise AssertionError("bad password accepted")
except CloudShellAPIError as e:
    assert e.code == "118", e.code
try:
    CloudShellAPISession(host="127.0.0.1", token_id="forged", domain="Global", port=PORT)
    raise AssertionError("bad token accepted")
except CloudShellAPIError as e:
    assert e.code == "100", e.code
ok("bad password / token -> CloudShellAPIError")

# 401 -> the client's login_required logs on again and retries once.
before = control("state")["logons"]
control("expire_tokens", {})
assert api.GetReservationDetails("r1").ReservationDescription.Id == "r1"
assert control("state")["logons"] == before + 1
control("fault", {"method": "GetReservationDetails", "kind": "unauthorized", "count": 1})
assert api.GetReservationDetails("r1").ReservationDescription.Id == "r1"
assert control("state")["logons"] == before + 2
ok("HTTP 401 -> re-logon and retry")

control("fault", {"method": "GetReservationDetails", "kind": "http500", "count": 1})
try:
    api.GetReservationDetails("r1")
    raise AssertionError("HTTP 500 not reported")
except CloudShellAPIError:
    raise AssertionError("HTTP 500 must not look like an API error")
except Exception as e:  # the client raises a plain Exception for non-2xx
    assert "[500]" in str(e), str(e)
ok("HTTP 500 -> plain exception, not CloudShellAPIError")

api.Logoff()
ok("Logoff")

# Every request the client made carried the documented headers.
for entry in control("log"):
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    assert headers["content-type"] == "text/xml", headers
    assert headers["clienttimezoneid"] == "UTC" and headers["datetimeformat"] == "MM/dd/yyyy HH:mm", headers
    assert headers["authorization"].startswith("MachineName="), headers
ok("headers as captured")
print("ALL OK", flush=True)
