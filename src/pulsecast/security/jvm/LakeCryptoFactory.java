/*
 * pulsecast: Parquet's properties-driven crypto factory, limited to the lake's
 * encrypted zones. Files under a folder named in pulsecast.lake.encrypt.zones
 * (bronze and silver: the tables only Spark writes and reads) are encrypted as
 * the parquet.encryption.* properties say; every other Parquet file is written
 * in plaintext: the zones delta-rs also writes and reads (gold, state), which
 * cannot open encrypted files, and the Delta log (checkpoints hold file names
 * and statistics, and delta-rs reads them too). An empty zone list encrypts
 * every file but the log's.
 */
package pulsecast.security;

import java.util.Collection;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.crypto.FileEncryptionProperties;
import org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory;
import org.apache.parquet.hadoop.api.WriteSupport;

public class LakeCryptoFactory extends PropertiesDrivenCryptoFactory {
  public static final String ZONES = "pulsecast.lake.encrypt.zones";

  public FileEncryptionProperties getFileEncryptionProperties(
      Configuration conf, Path tempFilePath, WriteSupport.WriteContext context) {
    Collection zones = conf.getTrimmedStringCollection(ZONES);
    boolean inZone = zones.isEmpty();
    for (Path p = tempFilePath; p != null; p = p.getParent()) {
      if ("_delta_log".equals(p.getName())) {
        return null;
      }
      if (zones.contains(p.getName())) {
        inZone = true;
      }
    }
    return inZone ? super.getFileEncryptionProperties(conf, tempFilePath, context) : null;
  }
}
