package aiproxy.mongoserver;

import java.net.InetSocketAddress;
import java.util.concurrent.CountDownLatch;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import org.h2.mvstore.MVStore;

/**
 * Local MongoDB-compatible server (mongo-java-server) for developing and
 * testing mod_aiproxy without a real MongoDB.
 *
 * <pre>
 *   java -jar mongo-server.jar [--host 127.0.0.1] [--port 27017] [--h2 FILE]
 * </pre>
 *
 * Without --h2 the data lives in memory only. Prints exactly one line
 * "READY &lt;port&gt;" to stdout once it is listening (--port 0 picks a free
 * port and prints it). SIGTERM/SIGINT shut it down cleanly (H2 data is
 * committed and the file closed). Logs go to stderr.
 */
public final class Main {

    /**
     * H2 commits in the background at this interval (H2's default is 1000 ms).
     * A clean shutdown loses nothing; after a SIGKILL or power loss, writes
     * acknowledged within about this long before it may be lost.
     */
    private static final int H2_AUTO_COMMIT_DELAY_MS = 100;

    private static void usage(String error) {
        if (error != null) {
            System.err.println("mongo-server: " + error);
        }
        System.err.println("usage: java -jar mongo-server.jar [--host ADDR] [--port N] [--h2 FILE]");
        System.exit(2);
    }

    public static void main(String[] args) throws InterruptedException {
        String host = "127.0.0.1";
        int port = 27017;
        String h2File = null;

        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("-h") || arg.equals("--help")) {
                usage(null);
            }
            if (i + 1 >= args.length) {
                usage("missing value for " + arg);
            }
            String value = args[++i];
            switch (arg) {
                case "--host" -> host = value;
                case "--h2" -> h2File = value;
                case "--port" -> {
                    try {
                        port = Integer.parseInt(value);
                    } catch (NumberFormatException e) {
                        usage("bad port: " + value);
                    }
                    if (port < 0 || port > 65535) {
                        usage("bad port: " + value);
                    }
                }
                default -> usage("unknown argument: " + arg);
            }
        }

        MongoBackend backend;
        if (h2File != null) {
            MVStore store = MVStore.open(h2File); // what new H2Backend(h2File) does
            store.setAutoCommitDelay(H2_AUTO_COMMIT_DELAY_MS);
            backend = new H2Backend(store);
        } else {
            backend = new MemoryBackend();
        }
        MongoServer server = new MongoServer(backend);
        try {
            server.bind(host, port);
        } catch (Exception e) { // Netty rethrows e.g. a checked BindException
            System.err.println("mongo-server: cannot listen on " + host + ":" + port + ": " + e);
            // Netty's event loop threads are not daemons: exit explicitly.
            System.exit(1);
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.err.println("mongo-server: shutting down");
            server.shutdown(); // closes connections and the backend (H2: commit + close file)
            System.err.println("mongo-server: stopped");
            stopped.countDown();
        }, "mongo-server-shutdown"));

        InetSocketAddress bound = server.getLocalAddress();
        System.err.println("mongo-server: listening on " + bound + " with "
                + (h2File != null ? "H2 backend, file " + h2File : "memory backend"));
        System.out.println("READY " + bound.getPort());
        System.out.flush();

        stopped.await();
    }
}
