"""`salescast kafka start|stop|status`: a real single-node Apache Kafka broker on loopback.

The broker's jars come from Maven Central through `pom.xml` beside this file
(versions pinned there) and are cached outside the work tree, in
$SALESCAST_CACHE_DIR or ~/.cache/salescast. The broker runs in KRaft mode as
one combined broker+controller, its storage formatted once by
kafka.tools.StorageTool, its state and log under the directory given
(default $SALESCAST_DATA_DIR/kafka).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

POM = Path(str(resources.files("salescast.localkafka").joinpath("pom.xml")))


class BrokerError(RuntimeError):
    """Something the user must fix; the message says what."""


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert match, "pom.xml lost its kafka.version property"
    return match.group(1)


def cache_dir() -> Path:
    root = os.environ.get("SALESCAST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "salescast")
    return Path(root) / f"kafka-{kafka_version()}"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` is not on PATH. {hint}")
    return path


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def ensure_jars(log=print) -> Path:
    """The broker's class path directory, fetched with Maven the first time."""
    lib = cache_dir() / "lib"
    done = cache_dir() / ".complete"
    if done.exists():
        return lib
    mvn = _require("mvn", "Install Maven 3 (Debian: `apt-get install maven`) so salescast can fetch the "
                          "Kafka broker from Maven Central.")
    log(f"fetching Apache Kafka {kafka_version()} jars with Maven into {lib} (once) ...")
    if lib.exists():
        shutil.rmtree(lib)
    proc = subprocess.run([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                           "-DincludeScope=runtime", f"-DoutputDirectory={lib}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrokerError("Maven could not fetch the Kafka jars (is Maven Central reachable?):\n"
                          + (proc.stdout + proc.stderr)[-3000:])
    done.write_text(kafka_version())
    return lib


def free_port(pair: bool = False) -> int:
    """A free loopback port; with `pair`, one whose next port is free too (a broker's controller takes it)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


CLIENT_USER = "salescast"
_BROKER_USER = "broker"  # the broker's own SCRAM user, for its inter-broker listener
SCRAM = "SCRAM-SHA-512"


def _keytool(*args: str) -> None:
    keytool = _require("keytool", "It comes with the Java runtime: put the JDK's bin folder on PATH.")
    proc = subprocess.run([keytool, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrokerError(f"keytool {args[0]} failed making the broker's TLS certificate:\n{proc.stdout}{proc.stderr}")


def _make_tls_files(folder: Path) -> str:
    """A self-signed CA (`ca.pem`, for clients) and the broker's PKCS12 keystore signed by it, valid for
    127.0.0.1 and localhost; returns the keystore's password. Made with the JDK's keytool: no other tool."""
    store_password = secrets.token_urlsafe(18)
    ca, broker, pem, request, signed = (folder / name for name in ("ca.p12", "broker.p12", "ca.pem", "broker.csr",
                                                                  "broker.crt"))
    common = ["-storetype", "PKCS12", "-storepass", store_password, "-keypass", store_password]
    _keytool("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
             "-dname", "CN=salescast local CA", "-ext", "bc:c", "-keystore", str(ca), *common)
    _keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca), "-storepass", store_password,
             "-file", str(pem))
    _keytool("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
             "-dname", "CN=localhost", "-keystore", str(broker), *common)
    _keytool("-certreq", "-alias", "broker", "-keystore", str(broker), "-storepass", store_password,
             "-file", str(request))
    _keytool("-gencert", "-rfc", "-alias", "ca", "-keystore", str(ca), "-storepass", store_password,
             "-infile", str(request), "-outfile", str(signed), "-validity", "3650",
             "-ext", "SAN=ip:127.0.0.1,dns:localhost")
    _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(pem), "-keystore", str(broker),
             "-storepass", store_password)
    _keytool("-importcert", "-noprompt", "-alias", "broker", "-file", str(signed), "-keystore", str(broker),
             "-storepass", store_password)
    for leftover in (request, signed, ca):  # the CA's private key is not kept: nothing more is signed
        leftover.unlink()
    return store_password


def _secret_file(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


@dataclass
class LocalBroker:
    """`secure`: the client listener takes SASL/SCRAM-SHA-512 over TLS, with a CA made at the first start;
    `client_env()` gives the settings a client needs (the password as a file, never in the environment)."""

    directory: Path
    port: int = 9092
    controller_port: int | None = None
    heap: str = "768m"
    secure: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Path:
        return self.directory / "credentials"

    def client_env(self) -> dict[str, str]:
        """The environment of a salescast process that talks to this broker."""
        if not self.secure:
            return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": SCRAM, "KAFKA_SASL_USERNAME": CLIENT_USER,
                "KAFKA_SASL_PASSWORD_FILE": str(self.credentials / f"{CLIENT_USER}.password"),
                "KAFKA_SSL_CAFILE": str(self.credentials / "ca.pem")}

    def _client_options(self) -> dict:
        if not self.secure:
            return {"bootstrap_servers": self.bootstrap}
        return {"bootstrap_servers": self.bootstrap, "security_protocol": "SASL_SSL", "sasl_mechanism": SCRAM,
                "sasl_plain_username": CLIENT_USER,
                "sasl_plain_password": (self.credentials / f"{CLIENT_USER}.password").read_text().strip(),
                "ssl_cafile": str(self.credentials / "ca.pem")}

    def _security(self) -> tuple[list[str], list[str]]:
        """(config lines, StorageTool format arguments) of the secure mode; both empty without it. The
        credentials are made once, with the storage."""
        if not self.secure:
            return [], []
        folder = self.credentials
        if not (folder / "broker.p12").exists():
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
            _secret_file(folder / "keystore.password", _make_tls_files(folder))
            for user in (CLIENT_USER, _BROKER_USER):
                _secret_file(folder / f"{user}.password", secrets.token_urlsafe(24))
        store_password = (folder / "keystore.password").read_text()
        broker_password = (folder / f"{_BROKER_USER}.password").read_text()
        lines = [
            f"sasl.enabled.mechanisms={SCRAM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM}",
            f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config=org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="{_BROKER_USER}" password="{broker_password}";',
            f"ssl.keystore.location={folder / 'broker.p12'}", "ssl.keystore.type=PKCS12",
            f"ssl.keystore.password={store_password}", f"ssl.key.password={store_password}",
            f"ssl.truststore.location={folder / 'broker.p12'}", "ssl.truststore.type=PKCS12",
            f"ssl.truststore.password={store_password}",
        ]
        scram = [f"--add-scram={SCRAM}=[name={user},password={(folder / f'{user}.password').read_text()}]"
                 for user in (_BROKER_USER, CLIENT_USER)]
        return lines, scram

    @property
    def pid_file(self) -> Path:
        return self.directory / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "broker.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        try:  # a reused pid is not our broker
            if b"kafka.Kafka" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        except OSError:
            pass
        return pid

    def _write_config(self, security: list[str]) -> Path:
        controller = self.controller_port or self.port + 1
        listener = "SASL_SSL" if self.secure else "PLAINTEXT"
        data = self.directory / "data"
        config = self.directory / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners={listener}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners={listener}://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={listener}",
            f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
            *security,
            f"log.dirs={data}",
            "num.partitions=8",
            # topics are created by salescast with SALESCAST_PARTITIONS; a typo must not invent one
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ]))
        (self.directory / "log4j2.properties").write_text("\n".join([
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = FILE",
            f"appender.file.fileName = {self.log_file}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = FILE",
            "logger.kafka.name = kafka",
            "logger.kafka.level = WARN",
            "logger.apache.name = org.apache.kafka",
            "logger.apache.level = WARN",
            "",
        ]))
        return config

    def _port_free(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    def start(self, timeout_s: float = 90.0, log=print) -> int:
        """Start the broker in the background and wait until it answers; returns its pid."""
        running = self.pid()
        if running is not None:
            log(f"Kafka is already running (pid {running}) on {self.bootstrap}")
            return running
        java = _require("java", "Install a Java 17+ runtime (Debian: `apt-get install openjdk-17-jre-headless`).")
        if java_major(java) < 17:
            raise BrokerError(f"Kafka {kafka_version()} needs Java 17 or newer; `{java}` is Java "
                              f"{java_major(java)}. Put a newer java first on PATH.")
        for port in (self.port, self.controller_port or self.port + 1):
            if not self._port_free(port):
                raise BrokerError(f"port {port} on 127.0.0.1 is already in use. Stop what listens there "
                                  f"(another Kafka? try `salescast kafka status`) or pick other ports with --port.")
        lib = ensure_jars(log)
        self.directory.mkdir(parents=True, exist_ok=True)
        formatted = (self.directory / "data" / "meta.properties").exists()
        marker = self.directory / "secure"
        if formatted and marker.exists() != self.secure:
            raise BrokerError(f"the broker in {self.directory} was set up {'with' if marker.exists() else 'without'} "
                              f"--secure; start it the same way, or give --dir another directory")
        if self.secure:
            marker.touch()
        security, scram_users = self._security()
        config = self._write_config(security)
        config.chmod(0o600)  # it holds the keystore's and the broker user's passwords in secure mode
        classpath = f"{lib}/*"
        if not (self.directory / "data" / "meta.properties").exists():
            # url-safe base64 may start with "-": passed as --cluster-id=ID so it is never read as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run([java, "-cp", classpath, f"-Dlog4j2.configurationFile={self.directory}/log4j2.properties",
                                  "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "--config",
                                  str(config), *scram_users],
                                 capture_output=True, text=True)
            if fmt.returncode != 0:
                output = fmt.stdout + fmt.stderr
                for user in (CLIENT_USER, _BROKER_USER) if self.secure else ():
                    output = output.replace((self.credentials / f"{user}.password").read_text(), "***")
                raise BrokerError(f"formatting Kafka storage failed:\n{output}")
        with open(self.directory / "broker.out", "ab") as out:
            proc = subprocess.Popen(
                [java, f"-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={self.directory}/log4j2.properties",
                 "-cp", classpath, "kafka.Kafka", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"the Kafka broker exited with code {proc.returncode}; its output:\n"
                                  + self._tail())
            if self.answers():
                log(f"Kafka {kafka_version()} is running on {self.bootstrap} (pid {proc.pid}, data in {self.directory})")
                if self.secure:
                    log("SASL/SCRAM-SHA-512 over TLS; clients take: "
                        + " ".join(f"{name}={value}" for name, value in self.client_env().items()))
                return proc.pid
            time.sleep(0.5)
        self.stop()
        raise BrokerError(f"the Kafka broker did not answer on {self.bootstrap} within {timeout_s:.0f}s; its log:\n"
                          + self._tail())

    def answers(self) -> bool:
        """True once the broker serves metadata requests."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(request_timeout_ms=3000, client_id="salescast-probe", **self._client_options())
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def stop(self, timeout_s: float = 30.0, log=print) -> bool:
        pid = self.pid()
        if pid is None:
            log("Kafka is not running")
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.2)
        else:
            log(f"Kafka (pid {pid}) did not stop within {timeout_s:.0f}s; killing it")
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        log(f"Kafka stopped (pid {pid})")
        return True

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return f"running (pid {pid}) on {self.bootstrap}" + ("" if self.answers() else ", not answering yet")

    def _tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.directory / "broker.out", self.log_file):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text
