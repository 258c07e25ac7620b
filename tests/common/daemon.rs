//! Running `clearhouse run` as a real process against the test broker.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};

/// One daemon deployment: its config, state and output directories, and topics.
pub struct Deployment {
    /// Directory holding config, state, out and logs.
    pub dir: PathBuf,
    /// Consumer group and topic prefix.
    pub name: String,
    /// Input topic.
    pub input: String,
}

impl Deployment {
    /// Writes `<dir>/<name>.toml` for `input` on `brokers`; `clock` freezes the wall clock and
    /// `admin` is the admin listener ("" for none).
    pub fn new(dir: &Path, name: &str, brokers: &str, input: &str, clock: &str, admin: &str) -> Deployment {
        let config = format!(
            "[kafka]\nbrokers = \"{brokers}\"\n\n[daemon]\nreplication_factor = 1\ngroup_id = \"{name}\"\ninput_topic = \"{input}\"\n\
             credits_topic = \"{name}.credits\"\nwindows_topic = \"{name}.windows\"\ndlq_topic = \"{name}.dlq\"\n\
             out_dir = \"{name}-out\"\nstate_dir = \"{name}-state\"\nadmin_listen = \"{admin}\"\nclock = \"{clock}\"\n\
             checkpoint_interval_ms = 300\nidle_tick_ms = 200\nshards = 2\n\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n"
        );
        std::fs::write(dir.join(format!("{name}.toml")), config).expect("write config");
        Deployment { dir: dir.to_owned(), name: name.to_owned(), input: input.to_owned() }
    }

    /// Adds a librdkafka property to the instance's `[kafka.properties]` (the file's last table).
    pub fn add_kafka_property(&self, key: &str, value: &str) {
        use std::io::Write as _;
        let path = self.dir.join(format!("{}.toml", self.name));
        let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("config");
        writeln!(file, "{key:?} = {value:?}").expect("write property");
    }

    /// Output directory.
    pub fn out(&self) -> PathBuf {
        self.dir.join(format!("{}-out", self.name))
    }

    /// Starts an instance; its log goes to `<name>-<tag>.log`.
    pub fn start(&self, tag: &str) -> Child {
        self.start_with_env(tag, &[])
    }

    /// Starts an instance with extra environment variables (fault injection).
    pub fn start_with_env(&self, tag: &str, env: &[(&str, &str)]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}-{tag}.log", self.name)))
            .expect("log");
        Command::new(env!("CARGO_BIN_EXE_clearhouse"))
            .args(["run", "--config", &format!("{}.toml", self.name)])
            .current_dir(&self.dir)
            .envs(env.iter().copied())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start clearhouse run")
    }

    /// The log file of instance `tag`.
    pub fn log_path(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{}-{tag}.log", self.name))
    }

    /// Waits until the log of instance `tag` contains `text`.
    pub fn wait_for_log(&self, tag: &str, text: &str, limit: Duration) {
        let path = self.dir.join(format!("{}-{tag}.log", self.name));
        let deadline = Instant::now() + limit;
        while !std::fs::read_to_string(&path).unwrap_or_default().contains(text) {
            assert!(Instant::now() < deadline, "{text:?} not in {} after {limit:?}", path.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Manifests written so far.
    pub fn manifests(&self) -> usize {
        std::fs::read_dir(self.out())
            .map(|d| {
                d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("manifest-")).count()
            })
            .unwrap_or(0)
    }

    /// Waits until `count` manifests exist (and their window events were published).
    pub fn wait_for_windows(&self, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.manifests() < count || self.windows_done() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} windows after {limit:?}; see logs in {}",
                self.manifests(),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Windows whose window-closed event was published.
    pub fn windows_done(&self) -> usize {
        let emitted = self.dir.join(format!("{}-state", self.name)).join(&self.input).join("emitted");
        std::fs::read_dir(emitted)
            .map(|d| d.filter_map(Result::ok).filter(|e| e.path().join("window.done").exists()).count())
            .unwrap_or(0)
    }

    /// Sum of the per-partition accounting in the state directory: (input, accepted, rejected, duplicates).
    pub fn accounting(&self) -> (u64, u64, u64, u64) {
        let root = self.dir.join(format!("{}-state", self.name)).join(&self.input);
        let mut sum = (0, 0, 0, 0);
        let Ok(entries) = std::fs::read_dir(root) else { return sum };
        for entry in entries.filter_map(Result::ok) {
            let progress = entry.path().join("progress.json");
            if let Ok(bytes) = std::fs::read(progress) {
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("progress json");
                let s = &v["stats"];
                let rejected: u64 =
                    s["rejected"].as_object().expect("map").values().map(|n| n.as_u64().unwrap_or(0)).sum();
                sum.0 += s["input"].as_u64().expect("input");
                sum.1 += s["accepted"].as_u64().expect("accepted");
                sum.2 += rejected;
                sum.3 += s["duplicates"].as_u64().expect("duplicates");
            }
        }
        sum
    }
}

/// Sends SIGTERM (or SIGKILL) to a child.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill");
    assert!(status.success(), "kill {sig} failed");
}

/// Every message of `topic` as (key, payload), read to its end.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut ends = BTreeMap::new();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks");
        if high > 0 {
            ends.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning).expect("tpl");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} took over 60 s");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let m = message.expect("consume");
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            ));
            if ends.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
                ends.remove(&m.partition());
            }
        }
    }
    out
}

/// Every file of a directory by name.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("read")))
        .collect()
}

/// A manifest without its fences and seal instants (file mode and Kafka mode record different
/// inputs, and only Kafka mode records seals).
pub fn without_fences(bytes: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).expect("manifest json");
    let object = v.as_object_mut().expect("object");
    object.remove("fences");
    object.remove("sealed_before");
    v
}

/// Counts of each key.
pub fn key_counts(messages: &[(String, Vec<u8>)]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for (key, _) in messages {
        *counts.entry(key.as_str()).or_default() += 1;
    }
    counts
}

/// Produces JSONL lines to `topic` (idempotent producer), keyed by merchant and stamped with the
/// event time like `gen --topic`.
pub fn produce_lines(brokers: &str, topic: &str, lines: &[&str]) {
    let records: Vec<(String, Option<i64>, &str)> = lines
        .iter()
        .map(|line| {
            let value = serde_json::from_str::<serde_json::Value>(line).ok();
            let field = |name: &str| value.as_ref().and_then(|v| v[name].as_str().map(str::to_owned));
            let key = field("merchant_id").unwrap_or_else(|| "unkeyed".to_owned());
            // Created when the refund happened, like `gen --topic`.
            let time = field("event_time").and_then(|t| t.parse::<jiff::Timestamp>().ok());
            (key, time.map(|t| t.as_millisecond()), *line)
        })
        .collect();
    produce(brokers, topic, &records);
}

/// Produces `(key, record timestamp in ms, value)` messages to `topic` and waits for them all.
pub fn produce(brokers: &str, topic: &str, records: &[(String, Option<i64>, &str)]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (key, timestamp, line) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(*line);
        if let Some(ms) = timestamp {
            record = record.timestamp(*ms);
        }
        while let Err((e, back)) = producer.send(record) {
            assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(_)), "produce: {e}");
            producer.poll(Duration::from_millis(20));
            record = back;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("all produced");
}

/// Generated instructions as JSONL lines, from `gen --out` into `dir`.
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
}
