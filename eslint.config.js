import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // templates/: code that runs inside sandboxes (Python, and Node 18 for the JS kernel), not Cove's.
  { ignores: ['node_modules', 'src/gen', 'agent', 'dist', 'templates'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // A dropped promise loses a sandbox.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Lower layers never import the edge (api, gateway, cli).
    files: [
      'src/runtime/**',
      'src/network/**',
      'src/store/**',
      'src/templates/**',
      'src/manager/**',
      'src/agent-channel/**',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/api/**', '**/gateway/**', '**/cli/**'],
              message: 'lower layers must not import the edge',
            },
          ],
        },
      ],
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
);
