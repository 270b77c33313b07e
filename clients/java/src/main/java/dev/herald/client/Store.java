package dev.herald.client;

import java.io.IOException;
import java.util.List;

/**
 * What a device keeps across restarts: its identity and the messageIds it already gave the
 * app. Replace it to keep them where the platform wants (Android: SharedPreferences);
 * {@link FileStore} and {@link MemoryStore} come with the client.
 */
public interface Store {
    /** The stored identity, or {@code null}: {installId, deviceId, deviceToken}. */
    String[] identity();

    void saveIdentity(String installId, String deviceId, String deviceToken) throws IOException;

    /** The messageIds already given to the app, oldest first. */
    List<String> seen();

    void saveSeen(List<String> ids) throws IOException;
}
