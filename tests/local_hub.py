"""A small in-memory server for the Hub API routes `huggingface_hub` and `transformers` use, for round-trip tests.

Routes (models and Spaces alike): card metadata validation, repo create, branch create, preupload (every file "regular"), commit (ndjson, base64 files), model info and
revision info, tree listing, and file resolve (HEAD/GET with `X-Repo-Commit` and `ETag`). Writes need a bearer
token; one commit per call, applied whole or not at all.
"""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class Repo:
    def __init__(self, private: bool, repo_type: str = "model", sdk: str | None = None):
        self.private = private
        self.repo_type = repo_type  # "model" or "space" (a Space's `sdk` as created)
        self.sdk = sdk
        self.branches = {"main": ({}, hashlib.sha1(b"init").hexdigest())}  # branch -> (files, commit sha)


class LocalHub:
    def __init__(self, read_only: tuple[str, ...] = ()):
        self.repos: dict[str, Repo] = {name: Repo(private=False) for name in read_only}
        self.read_only = set(read_only)  # repos owned by someone else: commits are forbidden
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub.resolve(self, head=True)

            def do_GET(self):
                path = urlparse(self.path).path
                if path.startswith(("/api/models/", "/api/spaces/")):
                    hub.api_get(self, path)
                else:
                    hub.resolve(self, head=False)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                hub.api_post(self, urlparse(self.path).path, self.rfile.read(length))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()

    # ---- helpers ----
    @staticmethod
    def reply(handler, status: int, body=None, headers: dict | None = None, head: bool = False):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        if not isinstance(body, bytes):
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if not head:
            handler.wfile.write(data)

    def error(self, handler, status: int, code: str, message: str, head: bool = False):
        self.reply(handler, status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}, head)

    def authorised(self, handler) -> bool:
        if not (handler.headers.get("authorization") or "").startswith("Bearer "):
            self.error(handler, 401, "Unauthorized", "Invalid credentials in Authorization header")
            return False
        return True

    def split(self, rest: str) -> tuple[str, list[str]]:
        parts = rest.split("/")
        return "/".join(parts[:2]), [unquote(p) for p in parts[2:]]

    # ---- routes ----
    def api_post(self, handler, path: str, body: bytes):
        if path == "/api/validate-yaml":  # the model card's metadata check
            return self.reply(handler, 200, {"errors": [], "warnings": []})
        if not self.authorised(handler):
            return
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = (
                f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            )
            with self.lock:
                if repo_id in self.repos:  # the Hub names the existing repo, which exist_ok=True relies on
                    message = "You already created this model repo"
                    body = {"error": message, "url": f"{self.endpoint}/{repo_id}"}
                    return self.reply(handler, 409, body, {"X-Error-Code": "RepoExists", "X-Error-Message": message})
                self.repos[repo_id] = Repo(
                    bool(payload.get("private")), payload.get("type", "model"), payload.get("sdk")
                )
            return self.reply(handler, 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id})
        repo_id, rest = self.split(path[len("/api/models/") :])  # as long as "/api/spaces/"
        repo = self.repos.get(repo_id)
        if repo is None:
            return self.error(handler, 404, "RepoNotFound", f"Repository {repo_id} not found")
        action, revision = rest[0], "/".join(rest[1:]) or "main"
        if action == "branch":
            with self.lock:
                if revision in repo.branches:
                    return self.error(handler, 409, "BranchExists", "Reference already exists")
                repo.branches[revision] = (dict(repo.branches["main"][0]), repo.branches["main"][1])
            return self.reply(handler, 200, {})
        if revision not in repo.branches:
            return self.error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if action == "preupload" and repo_id not in self.read_only:
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self.reply(handler, 200, {"files": modes, "commitOid": repo.branches[revision][1]})
        if action in ("commit", "preupload") and repo_id in self.read_only:
            return self.error(handler, 403, "Forbidden", f"You don't have the rights to write to {repo_id}")
        if action == "commit":
            files = dict(repo.branches[revision][0])
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
            sha = hashlib.sha1(repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode())
            with self.lock:
                repo.branches[revision] = (files, sha.hexdigest())
            url = f"{self.endpoint}/{repo_id}/commit/{sha.hexdigest()}"
            return self.reply(handler, 200, {"commitUrl": url, "commitOid": sha.hexdigest()})
        return self.error(handler, 404, "NotFound", f"Unknown route {path}")

    def api_get(self, handler, path: str):
        repo_id, rest = self.split(path[len("/api/models/") :])  # as long as "/api/spaces/"
        repo = self.repos.get(repo_id)
        if repo is None:
            return self.error(handler, 404, "RepoNotFound", f"Repository {repo_id} not found")
        revision = "main"
        if rest and rest[0] in ("revision", "tree"):
            revision = rest[1] if len(rest) > 1 else "main"
        if revision not in repo.branches:
            return self.error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files, sha = repo.branches[revision]
        if rest and rest[0] == "tree":
            folder = "/".join(rest[2:])
            entries = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in files.items()
                if not folder or name.startswith(folder + "/")
            ]
            if folder and not entries:
                return self.error(handler, 404, "EntryNotFound", f"{folder} does not exist")
            return self.reply(handler, 200, entries)
        info = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private}
        info["siblings"] = [{"rfilename": name} for name in sorted(files)]
        return self.reply(handler, 200, info)

    def resolve(self, handler, head: bool):
        path = urlparse(handler.path).path.strip("/")
        parts = path.split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self.error(handler, 404, "NotFound", f"Unknown route {path}", head)
        repo_id, revision, filename = "/".join(parts[:2]), unquote(parts[3]), "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self.error(handler, 404, "RepoNotFound", f"Repository {repo_id} not found", head)
        branch = repo.branches.get(revision) or next((b for b in repo.branches.values() if b[1] == revision), None)
        if branch is None:
            return self.error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        files, sha = branch
        if filename not in files:
            return self.error(handler, 404, "EntryNotFound", f"{filename} does not exist", head)
        data = files[filename]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        self.reply(handler, 200, data, {**headers, "Content-Type": "application/octet-stream"}, head)
