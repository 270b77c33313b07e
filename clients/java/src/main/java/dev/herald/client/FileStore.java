package dev.herald.client;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

/**
 * One properties file, replaced whole on each save (written beside it, then renamed, so a
 * crash leaves the old file or the new one).
 */
public final class FileStore implements Store {
    private final File file;
    private final Properties saved = new Properties();

    /** Reads {@code file} if it exists. */
    public FileStore(File file) throws IOException {
        this.file = file;
        if (file.exists()) {
            InputStream in = new FileInputStream(file);
            try {
                saved.load(in);
            } finally {
                in.close();
            }
        }
    }

    @Override
    public synchronized String[] identity() {
        String id = saved.getProperty("deviceId");
        if (id == null) {
            return null;
        }
        return new String[] {saved.getProperty("installId", ""), id, saved.getProperty("deviceToken", "")};
    }

    @Override
    public synchronized void saveIdentity(String installId, String deviceId, String deviceToken) throws IOException {
        saved.setProperty("installId", installId);
        saved.setProperty("deviceId", deviceId);
        saved.setProperty("deviceToken", deviceToken);
        write();
    }

    @Override
    public synchronized List<String> seen() {
        String s = saved.getProperty("seen", "");
        return s.isEmpty() ? new ArrayList<String>() : new ArrayList<String>(Arrays.asList(s.split(",")));
    }

    @Override
    public synchronized void saveSeen(List<String> ids) throws IOException {
        StringBuilder s = new StringBuilder();
        for (String id : ids) {
            if (s.length() > 0) {
                s.append(',');
            }
            s.append(id);
        }
        saved.setProperty("seen", s.toString());
        write();
    }

    private void write() throws IOException {
        File tmp = new File(file.getPath() + ".tmp");
        OutputStream out = new FileOutputStream(tmp);
        try {
            saved.store(out, "Herald device");
        } finally {
            out.close();
        }
        if (!tmp.renameTo(file)) {
            throw new IOException("could not replace " + file);
        }
    }
}
