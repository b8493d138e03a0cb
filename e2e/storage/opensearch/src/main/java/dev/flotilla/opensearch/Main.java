package dev.flotilla.opensearch;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.codelibs.opensearch.runner.OpenSearchRunner;
import org.opensearch.common.settings.Settings;

/**
 * Runs a single-node OpenSearch in this JVM for the tests, until the process is told to stop.
 *
 * <pre>
 * java -cp 'lib/*' dev.flotilla.opensearch.Main --host 127.0.0.1 --http-port 9200 --dir DIR
 *      [--transport-port 9300] [--cluster-name flotilla]
 * </pre>
 *
 * The node binds HTTP and transport to the given (loopback) host only, forms a cluster on its own
 * (discovery.type=single-node), keeps config, data and logs under DIR/node_1, and has no security
 * plugin (plain HTTP, no auth). New indices get no replicas, so they turn green. The modules the
 * runner finds on the class path (analysis-common, mapper-extras, painless, reindex, ...) are loaded
 * as classpath plugins. It prints "flotilla-opensearch ready" once the cluster is yellow.
 * SIGTERM/SIGINT close the node cleanly (shutdown hook); exit status 1 on a start-up failure.
 */
public final class Main {
    private Main() {}

    public static void main(final String[] args) throws Exception {
        final Map<String, String> opts = parse(args);
        final String host = require(opts, "host");
        final String httpPort = require(opts, "http-port");
        final String dir = Path.of(require(opts, "dir")).toAbsolutePath().toString();
        final String transportPort = opts.getOrDefault("transport-port", "9300-9400");
        final String clusterName = opts.getOrDefault("cluster-name", "flotilla");

        final OpenSearchRunner runner = new OpenSearchRunner();
        // Without this the runner probes localhost:9201.. for a free HTTP port; ours is given.
        runner.setMaxHttpPort(-1);
        final CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                System.err.println("flotilla-opensearch: close failed: " + e);
            } finally {
                closed.countDown();
            }
        }, "flotilla-opensearch-shutdown"));

        try {
            runner.onBuild((index, settings) -> {
                settings.put("network.host", host);
                settings.put("http.port", httpPort);
                settings.put("transport.port", transportPort);
                settings.put("discovery.type", "single-node");
                // A nearly full disk must not turn indices read-only in the middle of a test run.
                settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
            }).build(OpenSearchRunner.newConfigs()
                    .basePath(dir)
                    .clusterName(clusterName)
                    .numOfNode(1));
            runner.ensureYellow();
            // One node: replicas could never be assigned, so new indices would stay yellow. Index
            // creation reads this default from the cluster metadata, not from the node settings.
            runner.client().admin().cluster().prepareUpdateSettings()
                    .setPersistentSettings(Settings.builder().put("cluster.default_number_of_replicas", 0))
                    .get();
        } catch (final Throwable e) {
            System.err.println("flotilla-opensearch: start-up failed");
            e.printStackTrace();
            Runtime.getRuntime().halt(1);
        }
        System.out.println("flotilla-opensearch ready: http://" + host + ":" + httpPort + " cluster " + clusterName);
        System.out.flush();
        closed.await();
    }

    private static Map<String, String> parse(final String[] args) {
        final Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            final String a = args[i];
            if (!a.startsWith("--") || i + 1 >= args.length) {
                usage("bad argument " + a);
            }
            opts.put(a.substring(2), args[++i]);
        }
        for (final String k : opts.keySet()) {
            if (!k.matches("host|http-port|transport-port|dir|cluster-name")) {
                usage("unknown option --" + k);
            }
        }
        return opts;
    }

    private static String require(final Map<String, String> opts, final String key) {
        final String v = opts.get(key);
        if (v == null || v.isEmpty()) {
            usage("--" + key + " is required");
        }
        return v;
    }

    private static void usage(final String problem) {
        System.err.println("flotilla-opensearch: " + problem);
        System.err.println("usage: Main --host HOST --http-port PORT --dir DIR"
                + " [--transport-port PORT] [--cluster-name NAME]");
        System.exit(2);
    }
}
