#!/usr/bin/env python3
"""An emulator of the CloudShell Automation API (XML RPC, "ResourceManagerApiService")
for lockrun's tests. Python 3 standard library only.

It speaks the wire protocol as captured from the official Python client
(cloudshell-automation-api 2026.2 and the 2017 generator client) and as Quali's
response schema (ApiCommandResult.xsd) describes it; check_client.py proves the
official client parses every reply:

* POST /ResourceManagerApiService/{Method}, body = XML whose root is the method
  name, one child per parameter; names are matched on local names, whitespace
  between elements is ignored, self-closing and empty containers are the same.
* Replies: 200, text/xml, the <Response CommandName Success ...> envelope in
  the ApiCommandResult namespace, <Error> only on failure, <ErrorCode>, and an
  optional <ResponseInfo xsi:type="...">.
* Logon / SecureLogon issue random 16-byte base64 tokens; every other method
  needs "Authorization: MachineName=...;Token=..." (pairs in any order) with a
  live token, else HTTP 401 (the official client then logs on again once).
* AddServiceToReservation checks and inserts the alias atomically per
  reservation (one lock each); a duplicate alias is error 100 "Service with
  given alias already exists".

Configuration: --config FILE (JSON, see DEFAULT_CONFIG) and/or flags.
Control (tests only, same port): POST /_control/<action> with a JSON body:
  fault {"method": "AddServiceToReservation"|"*", "kind": KIND, "seconds": 1.0,
         "count": N (default: every time)}
     KIND: delay (hold the request for "seconds", then carry it out: with
     seconds beyond the client's timeout, the request is carried out *after*
     the client gave up on it, as a slow real server does),
     delay_after_commit (carry out, sleep, answer), http500 (answer 500, do
     nothing), http500_after_commit, drop (close the connection, do nothing),
     drop_after_commit, unauthorized (401), garbage (200 with a body that is
     not XML)
  clear_faults {}            expire_tokens {}          set {"nul_in_description": true}
  add_service {"reservation", "model", "alias", "attributes": [[name, value]]}
  remove_service {"reservation", "alias"}
  GET /_control/state  -> {"reservations": {id: [service...]}, "calls": {...}, "logons": n,
                           "delayed": [{"method", "state": "held"|"carried_out"|"refused", "outcome"}...]}
     ("delayed" lists every request a delay fault held, so that a test can
     wait until a late request has been carried out instead of sleeping)
  GET /_control/log    -> [{"method", "headers", "body"}...] (every API request)

Prints "LISTENING <port>" on stdout once it accepts connections. With
--exit-on-eof it exits when its stdin closes, so it never outlives its test.
"""

import argparse
import base64
import json
import os
import secrets
import sys
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape, quoteattr

NS = ('xmlns="http://schemas.qualisystems.com/ResourceManagement/ApiCommandResult.xsd" '
      'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
      'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')
PREFIX = "/ResourceManagerApiService/"
ALIAS_EXISTS = "Service with given alias already exists"

DEFAULT_CONFIG = {
    # user -> password
    "users": {"admin": "admin"},
    # admin auth tokens accepted by SecureLogon -> user
    "admin_tokens": {},
    "domains": ["Global"],
    # service model -> attribute names it defines
    "service_models": {"Mutex Service": []},
    # reservation id -> {"name", "domain", "services": [{"model", "alias", "attributes": [[n, v]]}]}
    "reservations": {"r1": {}},
    # what RemoveServicesFromReservation does with an alias that is not there
    "missing_alias_on_remove": "ignore",
}


class ApiError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Reservation:
    def __init__(self, rid, spec):
        self.id = rid
        self.name = spec.get("name", "res")
        self.domain = spec.get("domain", "Global")
        self.owner = spec.get("owner", "admin")
        # The per-reservation lock that makes check-and-insert of an alias atomic.
        self.lock = threading.Lock()
        self.services = {}
        for service in spec.get("services", []):
            self.services[service["alias"]] = {
                "model": service["model"],
                "attributes": [list(a) for a in service.get("attributes", [])],
            }


class State:
    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.tokens = {}
        self.logons = 0
        self.calls = {}
        self.faults = []
        self.log = []
        self.nul_in_description = False
        # Requests held by a "delay" fault, in arrival order.
        self.delayed = []
        self.reservations = {rid: Reservation(rid, spec or {})
                             for rid, spec in config["reservations"].items()}

    def new_token(self, user, domain):
        token = base64.b64encode(secrets.token_bytes(16)).decode()
        with self.lock:
            self.tokens[token] = (user, domain)
            self.logons += 1
        return token

    def take_fault(self, method):
        with self.lock:
            for fault in self.faults:
                if fault.get("method", "*") not in ("*", method):
                    continue
                count = fault.get("count", -1)
                if count == 0:
                    continue
                if count > 0:
                    fault["count"] = count - 1
                return dict(fault)
        return None

    def record(self, method, headers, body):
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            if len(self.log) < 20000:
                self.log.append({"method": method, "headers": headers, "body": body})

    def reservation(self, rid):
        reservation = self.reservations.get(rid)
        if reservation is None:
            raise ApiError(100, "Reservation '%s' was not found" % rid)
        return reservation

    def snapshot(self):
        reservations = {}
        for rid, reservation in self.reservations.items():
            with reservation.lock:
                reservations[rid] = [
                    {"alias": alias, "model": s["model"], "attributes": s["attributes"]}
                    for alias, s in reservation.services.items()
                ]
        with self.lock:
            return {"reservations": reservations, "calls": dict(self.calls), "logons": self.logons,
                    "live_tokens": len(self.tokens), "delayed": [dict(d) for d in self.delayed]}


def envelope(method, success=True, code=0, error=None, info=""):
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             '<Response CommandName=%s Success="%s" %s>' % (quoteattr(method), "true" if success else "false", NS)]
    if error is not None:
        lines.append("  <Error>%s</Error>" % escape(error))
    lines.append("  <ErrorCode>%d</ErrorCode>" % code)
    if info:
        lines.append(info)
    lines.append("</Response>")
    return "\n".join(lines) + "\n"


def local(tag):
    return tag.rsplit("}", 1)[-1]


def params(root):
    """Parameters by local name: scalars as text, containers as elements."""
    return {local(child.tag): child for child in root}


def text(params_, name, default=""):
    node = params_.get(name)
    if node is None:
        return default
    return node.text or ""


def attribute_pairs(node):
    pairs = []
    if node is None:
        return pairs
    for item in node:
        fields = {local(f.tag): (f.text or "") for f in item}
        pairs.append([fields.get("Name", ""), fields.get("Value", "")])
    return pairs


def strings(node):
    return [] if node is None else [(s.text or "") for s in node if local(s.tag) == "string"]


def logon_info(user, domain, token):
    return ('  <ResponseInfo xsi:type="LogonResponseInfo">\n'
            '    <Domain Name=%s Description="A domain that includes all available resources" '
            'DomainId="dbaf480c-09f7-46d3-a2e2-e35d3e374a16" />\n'
            '    <User Name=%s IsAdmin="true" IsActive="true" DomainName=%s IsDomainAdmin="false" />\n'
            '    <Token Token=%s />\n'
            '  </ResponseInfo>') % (quoteattr(domain), quoteattr(user), quoteattr(domain), quoteattr(token))


class Api:
    """The methods. Each returns the ResponseInfo XML (or "") or raises ApiError."""

    def __init__(self, state):
        self.state = state

    def check_domain(self, domain):
        domain = domain or "Global"
        if domain not in self.state.config["domains"]:
            raise ApiError(100, "Domain '%s' does not exist" % domain)
        return domain

    def Logon(self, p, session):
        user, password = text(p, "username"), text(p, "password")
        domain = self.check_domain(text(p, "domainName"))
        users = self.state.config["users"]
        if user not in users:
            raise ApiError(100, "Login failed for user '%s'" % user)
        if users[user] != password:
            raise ApiError(118, "Incorrect password for user '%s'" % user)
        return logon_info(user, domain, self.state.new_token(user, domain))

    def SecureLogon(self, p, session):
        domain = self.check_domain(text(p, "domainName"))
        user = self.state.config["admin_tokens"].get(text(p, "token"))
        if user is None:
            raise ApiError(100, "Invalid or expired token")
        return logon_info(user, domain, self.state.new_token(user, domain))

    def Logoff(self, p, session):
        with self.state.lock:
            self.state.tokens.pop(session, None)
        return ""

    def AddServiceToReservation(self, p, session):
        reservation = self.state.reservation(text(p, "reservationId"))
        model, alias = text(p, "serviceName"), text(p, "alias")
        models = self.state.config["service_models"]
        if model not in models:
            raise ApiError(100, "Service model '%s' was not found in the data model" % model)
        if not alias.strip():
            raise ApiError(100, "Service alias must not be empty")
        attributes = attribute_pairs(p.get("attributes"))
        for name, _ in attributes:
            if name not in models[model]:
                raise ApiError(100, "Attribute '%s' does not exist on service model '%s'" % (name, model))
        with reservation.lock:
            if alias in reservation.services:
                raise ApiError(100, ALIAS_EXISTS)
            reservation.services[alias] = {"model": model, "attributes": attributes}
        return ""

    def RemoveServicesFromReservation(self, p, session):
        reservation = self.state.reservation(text(p, "reservationId"))
        with reservation.lock:
            for alias in strings(p.get("services")):
                if alias in reservation.services:
                    del reservation.services[alias]
                elif self.state.config["missing_alias_on_remove"] == "error":
                    raise ApiError(100, "Service '%s' was not found in reservation" % alias)
        return ""

    def GetReservationDetails(self, p, session):
        reservation = self.state.reservation(text(p, "reservationId"))
        models = self.state.config["service_models"]
        description = "&#x0;" if self.state.nul_in_description else ""
        lines = ['  <ResponseInfo xsi:type="GetReservationDescriptionResponseInfo">',
                 '    <ReservationDescription Id=%s Name=%s Description="%s" StartTime="03/02/2015 18:21" '
                 'EndTime="03/02/2015 20:21" RecurrenceType="None" Owner=%s Booked="true" Status="Started" '
                 'ProvisioningStatus="Ready" ActualEndTime="" CreateDate="03/02/2015 18:21" '
                 'ModificationDate="03/02/2015 18:21" DomainName=%s>'
                 % (quoteattr(reservation.id), quoteattr(reservation.name), description,
                    quoteattr(reservation.owner), quoteattr(reservation.domain)),
                 '    <Connectors />', '    <Apps />']
        with reservation.lock:
            services = list(reservation.services.items())
        if services:
            lines.append('    <Services>')
            for alias, service in services:
                lines.append('      <Service ServiceName=%s Alias=%s>' % (quoteattr(service["model"]), quoteattr(alias)))
                lines.append('        <Attributes>')
                given = dict(service["attributes"])
                # Like a real data model: every attribute of the model is listed,
                # with its default ("") unless a value was given.
                names = list(models.get(service["model"], []))
                names += [n for n in given if n not in names]
                for name in names:
                    lines.append('          <Attribute Name=%s Value=%s />' % (quoteattr(name), quoteattr(given.get(name, ""))))
                lines.append('        </Attributes>')
                lines.append('      </Service>')
            lines.append('    </Services>')
        else:
            lines.append('    <Services />')
        lines.append('    </ReservationDescription>')
        lines.append('  </ResponseInfo>')
        return "\n".join(lines)

    def GetCurrentReservations(self, p, session):
        owner = text(p, "reservationOwner")
        items = [r for r in self.state.reservations.values() if not owner or r.owner == owner]
        if not items:
            return ""
        lines = ['  <ResponseInfo xsi:type="GetActiveReservationsResponseInfo">', '    <Reservations>']
        for r in items:
            lines.append('      <Reservation Id=%s Name=%s Owner=%s Status="Started" DomainName=%s />'
                         % (quoteattr(r.id), quoteattr(r.name), quoteattr(r.owner), quoteattr(r.domain)))
        lines += ['    </Reservations>', '  </ResponseInfo>']
        return "\n".join(lines)


NO_SESSION = {"Logon", "SecureLogon"}


def session_token(header):
    """'MachineName=x:8029;Token=abc==' in any order -> 'abc==' (None if absent/Unset)."""
    fields = {}
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    token = fields.get("token", "")
    return None if token in ("", "Unset") else token


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CloudShellEmulator/1.0"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("emulator: " + (fmt % args) + "\n")

    def send(self, status, body, content_type="text/xml; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_GET(self):
        state = self.server.state
        if self.path == "/_control/state":
            return self.send(200, json.dumps(state.snapshot()), "application/json")
        if self.path == "/_control/log":
            with state.lock:
                log = list(state.log)
            return self.send(200, json.dumps(log), "application/json")
        self.send(404, "not found\n", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.startswith("/_control/"):
            return self.control(self.path[len("/_control/"):], raw)
        if not self.path.startswith(PREFIX):
            return self.send(404, "not found\n", "text/plain")
        method = self.path[len(PREFIX):]
        state = self.server.state
        state.record(method, {k: v for k, v in self.headers.items()}, raw.decode("utf-8", "replace"))
        handler = getattr(self.server.api, method, None) if method[:1].isupper() else None
        if handler is None:
            return self.send(404, "unknown method %s\n" % method, "text/plain")

        fault = state.take_fault(method)
        kind = fault["kind"] if fault else None
        delayed = None
        if kind == "delay":
            delayed = {"method": method, "state": "held", "outcome": None}
            with state.lock:
                state.delayed.append(delayed)
            time.sleep(fault.get("seconds", 1.0))
        elif kind == "http500":
            return self.send(500, "Internal Server Error\n", "text/plain")
        elif kind == "drop":
            return self.drop()
        elif kind == "unauthorized":
            return self.send(401, "Unauthorized\n", "text/plain")
        elif kind == "garbage":
            return self.send(200, "<html><body>Service Unavailable", "text/html")

        session = session_token(self.headers.get("Authorization"))
        if method not in NO_SESSION:
            with state.lock:
                live = session in state.tokens
            if not live:
                self.not_carried_out(delayed)
                return self.send(401, "Unauthorized\n", "text/plain")
        try:
            root = ET.fromstring(raw)
        except ET.ParseError as e:
            self.not_carried_out(delayed)
            return self.send(400, "malformed request XML: %s\n" % e, "text/plain")
        try:
            info = handler(params(root), session)
            reply = envelope(method, info=info)
            outcome = "ok"
        except ApiError as e:
            reply = envelope(method, success=False, code=e.code, error=e.message)
            outcome = "error %d: %s" % (e.code, e.message)
        if delayed is not None:
            # Carried out now, whether or not the client is still listening.
            with state.lock:
                delayed["state"] = "carried_out"
                delayed["outcome"] = outcome

        if kind == "delay_after_commit":
            time.sleep(fault.get("seconds", 1.0))
        elif kind == "http500_after_commit":
            return self.send(500, "Internal Server Error\n", "text/plain")
        elif kind == "drop_after_commit":
            return self.drop()
        try:
            self.send(200, reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def not_carried_out(self, delayed):
        if delayed is not None:
            with self.server.state.lock:
                delayed["state"] = "refused"

    def drop(self):
        # No answer at all: the client sees the connection close.
        self.close_connection = True

    def control(self, action, raw):
        state = self.server.state
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            return self.send(400, "bad json\n", "text/plain")
        if action == "fault":
            with state.lock:
                state.faults.append(payload)
        elif action == "clear_faults":
            with state.lock:
                state.faults.clear()
        elif action == "expire_tokens":
            with state.lock:
                state.tokens.clear()
        elif action == "set":
            if "nul_in_description" in payload:
                state.nul_in_description = bool(payload["nul_in_description"])
        elif action == "add_service":
            reservation = state.reservations[payload["reservation"]]
            with reservation.lock:
                reservation.services[payload["alias"]] = {
                    "model": payload.get("model", "Mutex Service"),
                    "attributes": [list(a) for a in payload.get("attributes", [])]}
        elif action == "remove_service":
            reservation = state.reservations[payload["reservation"]]
            with reservation.lock:
                reservation.services.pop(payload["alias"], None)
        else:
            return self.send(404, "unknown control action\n", "text/plain")
        self.send(200, "{}", "application/json")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops SYNs under the torture test's load,
    # which costs clients a one-second SYN retry.
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # Clients that time out hang up on purpose; that is not news.
        if self.verbose:
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file (keys as in DEFAULT_CONFIG)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--admin-token", action="append", default=[], metavar="TOKEN:USER")
    parser.add_argument("--reservation", action="append", default=[], metavar="ID")
    parser.add_argument("--model", action="append", default=[], metavar="NAME[:ATTR,ATTR...]")
    parser.add_argument("--exit-on-eof", action="store_true", help="exit when stdin closes")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    config = json.loads(json.dumps(DEFAULT_CONFIG))
    if args.config:
        with open(args.config) as f:
            config.update(json.load(f))
    for spec in args.user:
        name, _, password = spec.partition(":")
        config["users"][name] = password
    for spec in args.admin_token:
        token, _, user = spec.rpartition(":")
        config["admin_tokens"][token] = user
    for rid in args.reservation:
        config["reservations"].setdefault(rid, {})
    for spec in args.model:
        name, _, attrs = spec.partition(":")
        config["service_models"][name] = [a for a in attrs.split(",") if a]

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(config)
    server.api = Api(server.state)
    server.verbose = args.verbose
    if args.exit_on_eof:
        def watch():
            sys.stdin.read()
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    print("LISTENING %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
