package dev.exactly.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A Kafka Streams application that exactly is benchmarked against.
 *
 * <p>It reads one topic and writes another under {@code exactly_once_v2}, either copying each
 * record as it is ({@code passthrough}) or reshaping a JSON value ({@code map}) the way exactly's
 * jq expression {@code {id: .id, ts: .ts, total: (.price * .qty), customer: .customer.id}} does. It prints
 * {@code READY} on stdout once the client is RUNNING, logs only warnings and errors (to stderr),
 * and closes cleanly on SIGTERM.
 */
public final class StreamsPeer {

  private static final String USAGE =
      String.join(
          "\n",
          "usage: java -jar kafka-streams-peer.jar --bootstrap HOST:PORT --input TOPIC --output TOPIC",
          "           --application-id ID [--mode passthrough|map] [--commit-interval-ms MS]",
          "           [--threads N] [--close-timeout-ms MS]",
          "",
          "  --mode                passthrough (default) copies records; map reshapes JSON values to",
          "                        {\"id\": .id, \"ts\": .ts, \"total\": .price * .qty, \"customer\": .customer.id}",
          "  --commit-interval-ms  Kafka Streams commit.interval.ms (default 100)",
          "  --threads             num.stream.threads (default 1)",
          "  --close-timeout-ms    how long shutdown waits for the client to close (default 30000)");

  private static final ObjectMapper JSON = new ObjectMapper();

  private StreamsPeer() {}

  /** The settings taken from the command line. */
  record Options(
      String bootstrap,
      String input,
      String output,
      String applicationId,
      String mode,
      long commitIntervalMs,
      int threads,
      long closeTimeoutMs) {

    static Options parse(String[] args) {
      Map<String, String> flags = new LinkedHashMap<>();
      for (int i = 0; i < args.length; i++) {
        String arg = args[i];
        if (arg.equals("-h") || arg.equals("--help")) {
          System.err.println(USAGE);
          System.exit(0);
        }
        if (!arg.startsWith("--")) {
          throw new IllegalArgumentException("unexpected argument: " + arg);
        }
        String name;
        String value;
        int eq = arg.indexOf('=');
        if (eq > 0) {
          name = arg.substring(2, eq);
          value = arg.substring(eq + 1);
        } else {
          if (i + 1 >= args.length) {
            throw new IllegalArgumentException("flag " + arg + " needs a value");
          }
          name = arg.substring(2);
          value = args[++i];
        }
        if (!List.of(
                "bootstrap",
                "input",
                "output",
                "application-id",
                "mode",
                "commit-interval-ms",
                "threads",
                "close-timeout-ms")
            .contains(name)) {
          throw new IllegalArgumentException("unknown flag --" + name);
        }
        flags.put(name, value);
      }
      String mode = flags.getOrDefault("mode", "passthrough");
      if (!mode.equals("passthrough") && !mode.equals("map")) {
        throw new IllegalArgumentException("--mode must be passthrough or map, not " + mode);
      }
      int threads = (int) number(flags, "threads", 1);
      if (threads < 1) {
        throw new IllegalArgumentException("--threads must be at least 1");
      }
      return new Options(
          required(flags, "bootstrap"),
          required(flags, "input"),
          required(flags, "output"),
          required(flags, "application-id"),
          mode,
          number(flags, "commit-interval-ms", 100),
          threads,
          number(flags, "close-timeout-ms", 30_000));
    }

    private static String required(Map<String, String> flags, String name) {
      String value = flags.get(name);
      if (value == null || value.isEmpty()) {
        throw new IllegalArgumentException("--" + name + " is required");
      }
      return value;
    }

    private static long number(Map<String, String> flags, String name, long fallback) {
      String value = flags.get(name);
      if (value == null) {
        return fallback;
      }
      try {
        long n = Long.parseLong(value);
        if (n < 0) {
          throw new NumberFormatException();
        }
        return n;
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("--" + name + " must be a non-negative integer: " + value);
      }
    }
  }

  /** Values that the map mode could not read as a JSON object; they are dropped. */
  static final AtomicLong SKIPPED = new AtomicLong();

  static Properties properties(Options o) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, o.applicationId());
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, o.bootstrap());
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, o.commitIntervalMs());
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, o.threads());
    // Stateless topology: no cache is used; zero keeps it so if that changes.
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
    p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
    p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    return p;
  }

  static Topology topology(Options o) {
    Serde<byte[]> bytes = Serdes.ByteArray();
    StreamsBuilder builder = new StreamsBuilder();
    KStream<byte[], byte[]> in = builder.stream(o.input(), Consumed.with(bytes, bytes));
    KStream<byte[], byte[]> out =
        o.mode().equals("map")
            ? in.flatMapValues(
                value -> {
                  byte[] mapped = reshape(value);
                  if (mapped == null) {
                    SKIPPED.incrementAndGet();
                    return Collections.<byte[]>emptyList();
                  }
                  return List.of(mapped);
                })
            : in;
    out.to(o.output(), Produced.with(bytes, bytes));
    return builder.build();
  }

  /**
   * {@code {"id": .id, "ts": .ts, "total": .price * .qty, "customer": .customer.id}}; a missing field, or a
   * total of anything but two numbers, gives null. Returns null when the value is not a JSON
   * object.
   */
  static byte[] reshape(byte[] value) {
    if (value == null) {
      return null;
    }
    JsonNode in;
    try {
      in = JSON.readTree(value);
    } catch (IOException e) {
      return null;
    }
    if (in == null || !in.isObject()) {
      return null;
    }
    JsonNodeFactory f = JSON.getNodeFactory();
    ObjectNode out = f.objectNode();
    out.set("id", orNull(in.get("id")));
    out.set("ts", orNull(in.get("ts")));
    out.set("total", product(in.get("price"), in.get("qty")));
    JsonNode customer = in.get("customer");
    out.set("customer", orNull(customer == null || !customer.isObject() ? null : customer.get("id")));
    try {
      return JSON.writeValueAsBytes(out);
    } catch (IOException e) {
      throw new IllegalStateException("cannot write JSON", e);
    }
  }

  private static JsonNode orNull(JsonNode n) {
    return n == null ? JsonNodeFactory.instance.nullNode() : n;
  }

  /** Integers multiply exactly (as jq does for integral inputs); anything else as doubles. */
  private static JsonNode product(JsonNode a, JsonNode b) {
    JsonNodeFactory f = JsonNodeFactory.instance;
    if (a == null || b == null || !a.isNumber() || !b.isNumber()) {
      return f.nullNode();
    }
    if (a.isIntegralNumber() && b.isIntegralNumber() && a.canConvertToLong() && b.canConvertToLong()) {
      try {
        return f.numberNode(Math.multiplyExact(a.longValue(), b.longValue()));
      } catch (ArithmeticException overflow) {
        // fall through to a double product
      }
    }
    return f.numberNode(a.doubleValue() * b.doubleValue());
  }

  public static void main(String[] args) throws InterruptedException {
    Options o;
    try {
      o = Options.parse(args);
    } catch (IllegalArgumentException e) {
      System.err.println("kafka-streams-peer: " + e.getMessage());
      System.err.println(USAGE);
      System.exit(2);
      return;
    }
    System.err.printf(
        "kafka-streams-peer: %s %s -> %s, application.id=%s, exactly_once_v2,"
            + " commit.interval.ms=%d, num.stream.threads=%d%n",
        o.mode(), o.input(), o.output(), o.applicationId(), o.commitIntervalMs(), o.threads());

    KafkaStreams streams = new KafkaStreams(topology(o), properties(o));
    CountDownLatch stopped = new CountDownLatch(1);
    AtomicBoolean ready = new AtomicBoolean();
    AtomicBoolean failed = new AtomicBoolean();
    Duration closeTimeout = Duration.ofMillis(o.closeTimeoutMs());

    streams.setStateListener(
        (now, before) -> {
          if (now == KafkaStreams.State.RUNNING && ready.compareAndSet(false, true)) {
            System.out.println("READY");
            System.out.flush();
          } else if (now == KafkaStreams.State.ERROR) {
            failed.set(true);
            stopped.countDown();
          } else if (now == KafkaStreams.State.NOT_RUNNING) {
            stopped.countDown();
          }
        });
    streams.setUncaughtExceptionHandler(
        e -> {
          System.err.println("kafka-streams-peer: stream thread failed: " + e);
          return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });

    Thread hook =
        new Thread(
            () -> {
              // SIGTERM / SIGINT: commit what is in flight and leave the group.
              boolean closed = streams.close(closeTimeout);
              if (!closed) {
                System.err.println("kafka-streams-peer: close timed out after " + closeTimeout);
              }
              report();
              stopped.countDown();
            },
            "peer-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);

    streams.start();
    stopped.await();

    if (failed.get()) {
      // The client gave up on its own: close it and exit non-zero (the hook
      // then finds it closed already).
      streams.close(closeTimeout);
      System.err.println("kafka-streams-peer: client entered ERROR state");
      System.exit(1);
    }
  }

  private static void report() {
    long skipped = SKIPPED.get();
    if (skipped > 0) {
      System.err.println("kafka-streams-peer: skipped " + skipped + " value(s) that were not JSON objects");
    }
  }
}
