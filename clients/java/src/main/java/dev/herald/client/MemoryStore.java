package dev.herald.client;

import java.util.ArrayList;
import java.util.List;

/** Everything in memory: lost when the process ends (tests, short-lived tools). */
public final class MemoryStore implements Store {
    private String[] identity;
    private List<String> seen = new ArrayList<String>();

    @Override
    public synchronized String[] identity() {
        return identity == null ? null : identity.clone();
    }

    @Override
    public synchronized void saveIdentity(String installId, String deviceId, String deviceToken) {
        identity = new String[] {installId, deviceId, deviceToken};
    }

    @Override
    public synchronized List<String> seen() {
        return new ArrayList<String>(seen);
    }

    @Override
    public synchronized void saveSeen(List<String> ids) {
        seen = new ArrayList<String>(ids);
    }
}
