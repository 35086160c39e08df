package io.github.peft4j.fuzz;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectMethod;

import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

/**
 * Runs one {@link ParserFuzzTest} method in this JVM (Jazzer fuzzes one test per JVM); {@code scripts/fuzz.sh}
 * starts one per target with {@code JAZZER_FUZZ=1}. Exits 0 when the campaign found nothing, 1 otherwise.
 */
public final class FuzzMain {
    private FuzzMain() {}

    /**
     * @param args the target (a method of {@link ParserFuzzTest}, a key of {@link FuzzTargets#ALL})
     */
    public static void main(String[] args) {
        if (args.length != 1 || !FuzzTargets.ALL.containsKey(args[0])) {
            System.err.println("usage: FuzzMain TARGET, one of " + FuzzTargets.ALL.keySet());
            System.exit(2);
        }
        LauncherDiscoveryRequest request = LauncherDiscoveryRequestBuilder.request()
                .selectors(selectMethod(ParserFuzzTest.class.getName() + "#" + args[0] + "(byte[])")).build();
        Launcher launcher = LauncherFactory.create();
        SummaryGeneratingListener listener = new SummaryGeneratingListener();
        launcher.execute(request, listener);
        TestExecutionSummary s = listener.getSummary();
        s.getFailures().forEach(f -> System.out.println("finding: " + f.getTestIdentifier().getDisplayName() + ": "
                + f.getException()));
        System.out.println("fuzz " + args[0] + ": " + s.getTestsSucceededCount() + " passed, " + s.getTotalFailureCount()
                + " failed");
        System.exit(s.getTotalFailureCount() == 0 ? 0 : 1);
    }
}
