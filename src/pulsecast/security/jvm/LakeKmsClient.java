/*
 * pulsecast: the KMS client Parquet's key tools call to wrap and unwrap the keys
 * of each lake file. Its "master keys" are pulsecast data keys (the keystore's
 * `lake` key), handed over in the Hadoop property pulsecast.lake.keys.secret as
 * "id:base64,...": the driver unwraps them from the keystore, so rotating the
 * keystore's master key changes nothing here. Wrapping is AES-GCM with the key
 * id as associated data (KeyToolkit's local format, which pulsecast's Python
 * client reproduces). Compiled at run time by pulsecast (Janino: a JRE suffices),
 * so it keeps to the Java that Janino understands (no generics inference).
 */
package pulsecast.security;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.crypto.KeyAccessDeniedException;
import org.apache.parquet.crypto.keytools.KeyToolkit;
import org.apache.parquet.crypto.keytools.KmsClient;

public class LakeKmsClient implements KmsClient {
  public static final String KEYS_PROPERTY = "pulsecast.lake.keys.secret";

  private final Map keys = new HashMap();

  public void initialize(
      Configuration conf, String instanceId, String instanceUrl, String accessToken) {
    String[] entries = conf.get(KEYS_PROPERTY, "").split(",");
    for (int i = 0; i < entries.length; i++) {
      int colon = entries[i].indexOf(':');
      if (colon > 0) {
        keys.put(
            entries[i].substring(0, colon).trim(),
            Base64.getDecoder().decode(entries[i].substring(colon + 1).trim()));
      }
    }
  }

  private byte[] key(String id) {
    byte[] key = (byte[]) keys.get(id);
    if (key == null) {
      throw new KeyAccessDeniedException(
          "pulsecast lake key " + id + " is not in " + KEYS_PROPERTY);
    }
    return key;
  }

  public String wrapKey(byte[] keyBytes, String masterKeyIdentifier) {
    return KeyToolkit.encryptKeyLocally(
        keyBytes, key(masterKeyIdentifier), masterKeyIdentifier.getBytes(StandardCharsets.UTF_8));
  }

  public byte[] unwrapKey(String wrappedKey, String masterKeyIdentifier) {
    return KeyToolkit.decryptKeyLocally(
        wrappedKey, key(masterKeyIdentifier), masterKeyIdentifier.getBytes(StandardCharsets.UTF_8));
  }
}
